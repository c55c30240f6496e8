"""`python cli.py COMMAND ...`: the command line (its commands live in `pipeline.cli`)."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
