"""Select ALS settings on the ranker's label window (ALS on history -> ranking the window's logged views).

Never on the test set. Run after `dvc repro split`: `python benchmarks/als_validation.py ALPHA:NEG_WEIGHT:REG:FACTORS:ITERS ...`
(NEG_WEIGHT < 0 means the log1p_watch_ratio confidence on every view). Prints validation NDCG@10 per setting.
"""
import os, sys, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np, polars as pl, scipy.sparse as sp
from threadpoolctl import threadpool_limits
from implicit.als import AlternatingLeastSquares
from reco.models.als import IdMap
from reco.evaluation.evaluate import build_test_grid, evaluate_models
hist = pl.read_parquet("data/split/history.parquet", columns=["user_id","video_id","watch_ratio"])
pairs = hist.group_by(["user_id","video_id"]).agg(pl.col("watch_ratio").max())
lab = pl.read_parquet("data/split/ranker_labels.parquet")
users = np.unique(lab["user_id"].to_numpy()); rng=np.random.default_rng(0); users=np.sort(rng.choice(users, 1500, replace=False))
lab = lab.join(pl.DataFrame({"user_id": users.astype(np.int32)}), on="user_id", how="semi")
grid = build_test_grid(lab)
uids = IdMap.from_values(pairs["user_id"].to_numpy()); iids = IdMap.from_values(pairs["video_id"].to_numpy())
r = uids.index_of(pairs["user_id"].to_numpy()); c = iids.index_of(pairs["video_id"].to_numpy())
wr = pairs["watch_ratio"].to_numpy()
pos_rate = pl.DataFrame({"video_id": pairs["video_id"], "p": (wr>2).astype(np.float64)}).group_by("video_id").agg(pl.col("p").sum().alias("pos"), pl.len().alias("n"))
g = (wr>2).mean()
pop = pl.DataFrame({"video_id": grid.items}).join(pos_rate, on="video_id", how="left").select(((pl.col("pos").fill_null(0)+50*g)/(pl.col("n").fill_null(0)+50)))
pops = np.broadcast_to(pop.to_numpy().ravel().astype(np.float32), grid.relevant.shape)
res = evaluate_models(grid, {"pop": pops}, [10])["pop"].summary
print("popularity ndcg10=%.4f" % res["ndcg_at_10"])
for spec in sys.argv[1:]:
    alpha, beta, reg, f, it = spec.split(":"); alpha, beta, reg = float(alpha), float(beta), float(reg); f=int(f); it=int(it)
    pos = wr > 2.0
    if beta < 0:  # log1p confidence on every view (the original default)
        vals = (1 + alpha*np.log1p(wr)).astype(np.float32); keep = wr > 0
    else:
        vals = np.where(pos, 1 + alpha, -(1 + beta)).astype(np.float32); keep = pos | (beta > 0)
    m = sp.csr_matrix((vals[keep], (r[keep], c[keep])), shape=(len(uids), len(iids)), dtype=np.float32)
    t=time.time()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=f, regularization=reg, alpha=1.0, iterations=it, random_state=42, num_threads=2, use_gpu=False)
        model.fit(m, show_progress=False)
    U = model.user_factors; V = model.item_factors
    ui = uids.index_of(grid.users); ii = iids.index_of(grid.items)
    s = np.where((ui[:,None]>=0)&(ii[None,:]>=0), U[ui] @ V[ii].T, np.nan)
    res = evaluate_models(grid, {"als": s}, [10])["als"].summary
    print(spec, "val ndcg10=%.4f map10=%.4f %.0fs" % (res["ndcg_at_10"], res["map_at_10"], time.time()-t), flush=True)
