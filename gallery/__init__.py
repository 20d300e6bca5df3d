"""Batch heatmap galleries: many images into one browsable HTML page (`explain gallery`).

inputs   INPUT (folder / glob / list file) -> items with ground truth from class folders
dataset  decoding in DataLoader workers; bad files travel as error records
writer   overlay rendering and PNG writing on a thread pool, overlapped with the model
manifest the append-only shard journals, and the merged manifest.json / manifest.csv
page     index.html from templates/ with the rows embedded (works from file://)
contact  the contact-sheet PNG (matplotlib)
outdir   --out checks, the run lock, the settings --resume must match
shard    torchrun scale-out: ranks, sharding, rank 0 decides and merges
build    the streaming pipeline that ties them together
"""
