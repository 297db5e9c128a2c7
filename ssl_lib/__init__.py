"""ssl_lib: the library behind the SSL transfer study."""
__version__ = "0.1.0"
