"""Run folders: the SVI training loop, checkpoints, resume and the files a run keeps."""
