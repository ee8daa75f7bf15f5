"""Files for the type checkers only: mypy and pyright check them, pytest never collects them."""
