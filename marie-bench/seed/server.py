"""The seed's design (Flask-SocketIO on eventlet, `../shared/seed`) reduced to what the idle
comparison of `marie-bench idle` needs: a token in the CONNECT auth payload, `connected`
answered as MARIE and the bare socketioxide server answer it, connections held.

Prints `listening <addr>` and exits when its standard input closes (its parent went away).
"""

import warnings

# Its maintainers deprecate eventlet (docs/benchmarks.md says so); the seed is built on it.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import os  # noqa: E402
import sys  # noqa: E402

from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO, emit, join_room  # noqa: E402

app = Flask(__name__)
# As in the seed, minus its logging (it would measure the log, not the server).
socketio = SocketIO(app, async_mode="eventlet", ping_timeout=60, ping_interval=25)


@socketio.on("connect")
def handle_connect(auth):
    token = (auth or {}).get("token")
    if not token:
        return False
    emit("connected", {"status": "connected", "sid": request.sid, "user_id": token, "session": "seed"})
    return None


@socketio.on("join_conversation")
def handle_join(data):
    conversation = str((data or {}).get("conversation_id", ""))
    join_room(conversation)
    emit("user_joined", {"user_id": "seed", "conversation_id": conversation}, to=conversation, include_self=False)
    emit("joined", {"conversation_id": conversation, "status": "joined", "members": [], "created": True})


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    # A real thread: eventlet's monkey patching would make it a green one, which a blocking
    # read of stdin would stall.
    threading = eventlet.patcher.original("threading")
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    listener = eventlet.listen(("127.0.0.1", 0), backlog=4096)
    print(f"listening 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    # eventlet serves at most 1,024 connections at once by default (`max_size`), which
    # `socketio.run()` in the seed keeps: lifted here, or the rest would wait.
    eventlet.wsgi.server(
        listener, app, max_size=1_000_000, log_output=False, log=open(os.devnull, "w")
    )
