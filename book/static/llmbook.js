/* The book's small browser fixes (loaded on every page).
 *
 * Sidebar toggles: sphinx-book-theme and pydata-sphinx-theme both bind their click handlers to
 * the *first* `.primary-toggle` / `.secondary-toggle` on the page, which is pydata's hidden
 * navbar button; the visible buttons in the article header (☰ and the in-page contents)
 * did nothing.  A click on a visible button is forwarded to the bound one.
 *
 * Search snippets: Sphinx builds result snippets from the page text, which still holds the
 * TeX of formulas and the source of Mermaid diagrams; those are removed from snippets.
 */
(function () {
  "use strict";

  function forwardToggles() {
    [".primary-toggle", ".secondary-toggle"].forEach(function (selector) {
      var bound = document.querySelector(selector);
      if (!bound) return;
      document.querySelectorAll(selector).forEach(function (button) {
        if (button === bound) return;
        button.addEventListener("click", function (event) {
          event.preventDefault();
          event.stopPropagation();
          bound.click();
        });
      });
    });
  }

  function cleanSnippets() {
    if (typeof Search === "undefined" || !Search.htmlToText || Search._llmbookClean) return;
    Search._llmbookClean = true;
    var original = Search.htmlToText;
    Search.htmlToText = function (htmlString, anchor) {
      var doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(".math, .mermaid, mjx-container, script, style, nav, .contents, .toctree-wrapper").forEach(function (el) {
        el.remove();
      });
      return original(doc.documentElement.outerHTML, anchor);
    };
  }

  function ready() {
    cleanSnippets();
    forwardToggles();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
