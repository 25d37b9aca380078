from rest_framework.pagination import CursorPagination, PageNumberPagination


class Pages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class NewestFirst(CursorPagination):
    """Runs: a cursor, so page 10,000 costs what page 1 costs (an indexed range, no OFFSET)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = ("-started_at", "-id")
