from producer.cli import app

app(prog_name="python -m producer")
