"""gunicorn settings privnet relies on, whatever the command line (gunicorn reads this file from its cwd).

Agents keep a long-poll open (``GET /api/v1/agent/config``, up to 60 s). On a graceful stop
(SIGTERM: restart, deploy) a worker waits for its open requests, up to ``graceful_timeout``: so
that it need not, the waiting long-polls are answered at once (``304``) and the agents poll again,
reaching a live worker.
"""

import signal


def post_worker_init(worker) -> None:
    """In each worker: on SIGTERM, release the waiting long-polls, then stop as gunicorn would."""
    from webapp import changes

    previous = signal.getsignal(signal.SIGTERM)

    def handle_term(signum, frame) -> None:
        changes.release_waiters()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handle_term)
    signal.siginterrupt(signal.SIGTERM, False)
