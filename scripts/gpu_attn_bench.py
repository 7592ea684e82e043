import torch, torch.nn.functional as F, json, sys
from torch.nn.attention import sdpa_kernel, SDPBackend
dev="cuda"; dt=torch.bfloat16
res={}
def bench(fn, n_layers, reps=20):
    s=torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2): fn()
    torch.cuda.current_stream().wait_stream(s)
    g=torch.cuda.CUDAGraph()
    with torch.cuda.graph(g): fn()
    for _ in range(3): g.replay()
    torch.cuda.synchronize()
    e0,e1=torch.cuda.Event(True),torch.cuda.Event(True)
    ts=[]
    for _ in range(reps):
        e0.record(); g.replay(); e1.record(); torch.cuda.synchronize(); ts.append(e0.elapsed_time(e1)*1e3/n_layers)
    ts.sort(); return ts[len(ts)//2]
for name,(nq,nkv) in {"7b":(28,4),"32b":(40,8)}.items():
  for B in (1,8):
    L=48; W=576; hd=128; G=nq//nkv
    ks=[torch.randn(B,nkv,W,hd,device=dev,dtype=dt) for _ in range(L)]; vs=[torch.randn_like(k) for k in ks]
    q=torch.randn(B,nkv,G,hd,device=dev,dtype=dt)
    lens=torch.full((B,),520,device=dev)
    allowed=torch.arange(W,device=dev)[None,:]<lens[:,None]
    mask=torch.zeros(B,1,G,W,device=dev,dtype=dt).masked_fill_(~allowed[:,None,None,:],float("-inf"))
    out={}
    def cur():
        for k,v in zip(ks,vs): F.scaled_dot_product_attention(q,k,v,attn_mask=mask)
    out["sdpa_mask_default"]=bench(cur,L)
    for be in ("EFFICIENT_ATTENTION","CUDNN_ATTENTION","MATH"):
        try:
            with sdpa_kernel(getattr(SDPBackend,be)):
                out["sdpa_mask_"+be]=bench(cur,L)
        except Exception as ex: out["sdpa_mask_"+be]=repr(ex)[:80]
    def nomask():
        for k,v in zip(ks,vs): F.scaled_dot_product_attention(q,k,v)
    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION): out["flash_nomask"]=bench(nomask,L)
    except Exception as ex: out["flash_nomask"]=repr(ex)[:80]
    def manual():
        for k,v in zip(ks,vs):
            s=torch.matmul(q,k.transpose(-1,-2)).float()*hd**-0.5+mask
            torch.matmul(s.softmax(-1).to(dt),v)
    out["manual"]=bench(manual,L)
    try:
        from torch.nn.attention.flex_attention import flex_attention, create_block_mask
        flex=torch.compile(flex_attention, dynamic=False)
        qf=torch.randn(B,nq,1,hd,device=dev,dtype=dt)
        def mm(b,h,qi,kv): return kv < lens[b]
        bm=create_block_mask(mm,B,None,1,W,device=dev)
        def fx():
            for k,v in zip(ks,vs): flex(qf,k,v,block_mask=bm,enable_gqa=True)
        out["flex_gqa"]=bench(fx,L)
        def fx2():
            for k,v in zip(ks,vs): flex(qf,k,v,score_mod=lambda sc,b,h,qi,kv: torch.where(kv<lens[b],sc,-float("inf")),enable_gqa=True)
        out["flex_gqa_scoremod"]=bench(fx2,L)
    except Exception as ex: out["flex"]=repr(ex)[:200]
    def copy():
        for k,v in zip(ks,vs): k.clone(); v.clone()
    out["kv_clone_x2(read+write)"]=bench(copy,L)
    out["kv_bytes_per_layer"]=2*B*nkv*W*hd*2
    res[f"{name}_b{B}"]=out; print(name,B,{k:(round(v,2) if isinstance(v,float) else v) for k,v in out.items()},flush=True)
json.dump(res,open(sys.argv[1],"w"),indent=1)
