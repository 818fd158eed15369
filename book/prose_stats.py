"""Chinese characters of prose (markdown cells, index pages) and figures per chapter: python book/prose_stats.py [-v]."""
import json,re,glob,collections,sys
cjk=re.compile(r'[\u4e00-\u9fff]')
tot=collections.Counter(); figs=collections.Counter()
for f in sorted(glob.glob('chapters/*/*.ipynb'))+sorted(glob.glob('chapters/*/*.md')):
    ch=f.split('/')[1]
    if f.endswith('.md'):
        if f.replace('.md','.ipynb') in glob.glob('chapters/*/*.ipynb'): continue
        txt=open(f).read()
    else:
        nb=json.load(open(f)); txt=''.join(''.join(c['source']) for c in nb['cells'] if c['cell_type']=='markdown')
        src=open(f.replace('.ipynb','.md')).read() if f.endswith('.ipynb') else ''
        figs[ch]+=len(re.findall(r'^\s+name: fig-',src,re.M))
    n=len(cjk.findall(txt)); tot[ch]+=n
    if '-v' in sys.argv: print(f,n)
print('chapter  cjk_chars  figures')
for k in sorted(tot): print(k,tot[k],figs[k])
