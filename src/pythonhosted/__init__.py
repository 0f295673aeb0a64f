"""pythonhosted: the services behind files.pythonhosted.org and pythonhosted.org."""

__version__ = "0.1.0"
