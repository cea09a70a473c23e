"""``python -m pydatatask``: the ``pydatatask`` command (see :mod:`pydatatask.command`)."""

from pydatatask.command import main

if __name__ == "__main__":
    main()
