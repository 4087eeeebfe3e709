from dmap.cli import run

run()
