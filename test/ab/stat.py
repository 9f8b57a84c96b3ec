# test/ab/stat.py: medians and ranges of per-round new/old ratios from run.sh output.
import sys,re,statistics as st,collections
rows=collections.defaultdict(lambda: collections.defaultdict(dict))
for line in open(sys.argv[1]):
    p=line.split()
    if len(p)<5 or not p[2].startswith('Benchmark'): continue
    v,r,name=p[0],int(p[1]),p[2]
    metrics={}
    toks=p[3:]
    for i in range(1,len(toks)-1):
        if re.match(r'^[0-9.]+$',toks[i]) and not re.match(r'^[0-9.]+$',toks[i+1]):
            metrics[toks[i+1]]=float(toks[i])
    rows[name][r][v]=metrics
for name,rs in rows.items():
    keys=set()
    for r in rs.values():
        for m in r.values(): keys|=set(m)
    for k in sorted(keys):
        if k not in ('ns/op','allocs/op','p50-ms','B/op','L2only/floor','withL1/floor','ratio'): continue
        ratios=[];olds=[];news=[]
        for r,d in sorted(rs.items()):
            if 'old' in d and 'new' in d and k in d['old'] and k in d['new'] and d['old'][k]>0:
                ratios.append(d['new'][k]/d['old'][k]); olds.append(d['old'][k]); news.append(d['new'][k])
        if ratios:
            print(f"{name:60s} {k:14s} new/old median {st.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}] old {st.median(olds):.1f} new {st.median(news):.1f} n={len(ratios)}")
