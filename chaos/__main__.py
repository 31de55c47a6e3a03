"""`python -m chaos` is the same as the `chaos` command."""
from chaos.cli import main

if __name__ == "__main__":
    main()
