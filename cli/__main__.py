from compress_cli.main import run

run()
