"""The files edge (files.pythonhosted.org): serving, uploading, the download log."""
