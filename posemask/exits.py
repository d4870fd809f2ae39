"""The exit codes of the `posemask` command, shared by the front end and the run (imports nothing).

    EXIT_OK        0  every photo has its masks (or has no person in it)
    EXIT_SKIPPED   1  finished, but some files were skipped (see summary.json)
    EXIT_USAGE     2  usage error (argparse's own code for a bad command line)
    EXIT_FAILED    3  the pipeline failed, OUTPUT cannot be written, or the central scheduler is lost
    EXIT_BUSY      4  another local-scheduler run is writing OUTPUT: nothing was done

A run stopped by a signal exits 128 + its number (SIGINT 130, SIGTERM 143):
pipeline.lib.stopping.exit_code_of. `posemask --help` lists them all (posemask/cli.py).
"""

EXIT_OK = 0
EXIT_SKIPPED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_BUSY = 4
