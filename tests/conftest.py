pytest_plugins = ["tests._figures"]
