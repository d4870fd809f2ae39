"""posemask's command line front end (posemask/cli.py); the pipeline is `pipeline`, the science `models`."""
