"""gunicorn configuration file of the cloud's APIs (``gunicorn -c <this file>``).

Why: the services parse ``sys.argv`` with oslo.config when their WSGI
application loads, and would reject gunicorn's own options; the workers
inherit the emptied argument list set here.
"""
import sys

sys.argv[1:] = []
