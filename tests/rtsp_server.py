"""A real RTSP server for the tests: GStreamer's gst-rtsp-server (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0).

Run with Debian's /usr/bin/python3 (not the project venv): ``rtsp_server.py CLIP.mp4 PORT``. Serves the H.264
track of the MP4 at rtsp://127.0.0.1:PORT/clip, each client from the start, and prints "ready" when listening.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    clip, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # Played at the clip's own pace (the sink side is clocked), like a camera.
    factory.set_launch(
        f'( filesrc location="{clip}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        print("failed", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
