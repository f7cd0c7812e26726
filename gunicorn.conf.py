"""gunicorn's settings, read by gunicorn itself from the working directory (the image's and
compose's commands run there).

The access log keeps the path without its query string and drops the Referer: an OAuth
callback carries ``?code=…&state=…`` (a one-time secret), and so does the Referer of the
page that follows it.
"""

access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"'
