"""The application layer: each job the command line offers, as a library call that takes
ready objects (a Model, method names, paths), reports through return values, records and
logging, and prints nothing. `explain.cli` parses arguments, calls a job and prints.

images     explain_images: top-k, overlays, panels and maps of image files, record by record
gallery    make_gallery: an HTML gallery of many images (torchrun-aware)
edit       import_edits / open_editor: the edit session of the browser editor
finetune   finetune_on_edits: fine-tune on an edit store, with the before/after report
evaluate   evaluate_on: metrics of methods on a named data set or an image folder
"""
