"""privnet's web app: the source of truth for one private layer-2 network."""

from __future__ import annotations

from flask import Flask

from .config import Config, config_from_environment


def create_app(config: type[Config] | None = None, overrides: dict | None = None) -> Flask:
    """Build the app: configuration, extensions, blueprints, commands. Nothing else."""
    config = config or config_from_environment()
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(config)
    app.config.update(overrides or {})
    config.check(app.config)

    from .extensions import csrf, db, limiter, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.root_path + "/../migrations"), render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)

    from . import api, auth, cli, enroll, links, main, network, nodes, topology_map

    for blueprint in (main.bp, auth.bp, nodes.bp, links.bp, network.bp, topology_map.bp, enroll.bp, api.bp, cli.bp):
        app.register_blueprint(blueprint)
    return app
