from lakehouse.chaos.cli import app

app()
