"""An example cliper plugin: ``cliper train -m textmf`` once this package is installed."""
