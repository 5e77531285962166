"""The operator console: server-rendered pages under /console/ on the API's listener.

Layout: `web.py` (sessions from cookies, CSRF, form parsing, security headers, the page
renderer), `render.py` (the Jinja2 environment and its filters), `signin.py` (sign-in and
sign-out), `pages.py` (what each page shows), `actions.py` (forms that change something),
`routes.py` (the URL table), `templates/` (Jinja2, autoescaped) and `static/` (htmx, uPlot and
our own CSS/JS, shipped in the package: nothing is fetched at run time).

Like api/, the console is a client of the service layer: its handlers call service functions
with the signed-in user's Caller, so a console user sees exactly what the tenancy's API callers
see, and the service's errors are shown with the same OCI code and message the API answers."""
