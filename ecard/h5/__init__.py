"""The citizen pages (H5) inside channel apps: server-rendered, read with a page session, changed by signed API
requests from the page's own key."""

from ecard.h5.service import PageSessions

__all__ = ["PageSessions"]
