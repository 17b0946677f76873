"""biocap: a Dagster asset platform reproducing the BioCAP pipeline end to end."""

__version__ = "0.1.0"
