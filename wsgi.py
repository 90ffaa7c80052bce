"""Entry point: gunicorn serves ``wsgi:app``; ``flask --app wsgi`` runs the commands."""

from webapp import create_app

app = create_app()
