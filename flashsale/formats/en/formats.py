"""One date format on every page (admin and live page): ISO-like and in UTC, the zone the API and
the sale's times are stated in. Django's own English formats ("Nov. 25, 2026, 7:17 p.m.") read
differently from the `2026-11-25 19:15` the admin's columns need, so these replace them."""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
TIME_FORMAT = "H:i"
YEAR_MONTH_FORMAT = "Y-m"
MONTH_DAY_FORMAT = "m-d"
