"""The dashboard's WSGI application for gunicorn: Horizon with WhiteNoise in
front serving the collected static files (gunicorn serves no files itself,
and Django serves them only in DEBUG). Settings: see cloud/horizon.py."""
from django.conf import settings
from openstack_dashboard.wsgi import application as dashboard
from whitenoise import WhiteNoise

application = WhiteNoise(dashboard, root=settings.STATIC_ROOT, prefix=settings.STATIC_URL,
                         max_age=3600)
