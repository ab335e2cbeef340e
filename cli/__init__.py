"""The ``spectra`` command line: click commands over the ``spectra`` and ``optim`` layers."""
