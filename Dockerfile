# One image for web, worker and beat.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_ENV=production
WORKDIR /app
COPY requirements/base.lock requirements/base.lock
# openssl: PEC receipts' S/MIME signatures are verified with "openssl cms -verify".
RUN apt-get update && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir --require-hashes -r requirements/base.lock \
    && useradd --system --uid 1000 --home /app psicogest
COPY . .
RUN DJANGO_SECRET_KEY=build DATABASE_URL=sqlite:////tmp/build.sqlite3 REDIS_URL=redis://build \
    EMAILSETTINGS_ENCRYPTION_KEYS=ZmFrZS1idWlsZC1rZXktMDAwMDAwMDAwMDAwMDAwMDA9 \
    DJANGO_ALLOWED_HOSTS=build DJANGO_STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --noinput -v 0 \
    && mkdir -p /app/var/media && chown -R psicogest /app/var
USER psicogest
ENV DJANGO_STATIC_ROOT=/app/staticfiles PSICOGEST_VAR_DIR=/app/var
EXPOSE 8000
CMD ["gunicorn", "psicogest.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
