from django.urls import re_path

from accounts.api import LoginView, LogoutEverywhereView, LogoutView, RegisterView

# Paths answer with or without a trailing slash: clients of the old API call them without.
urlpatterns = [
    re_path(r"^register/?$", RegisterView.as_view(), name="register"),
    re_path(r"^login/?$", LoginView.as_view(), name="login"),
    re_path(r"^logout/?$", LogoutView.as_view(), name="logout"),
    re_path(r"^logout-all/?$", LogoutEverywhereView.as_view(), name="logout-all"),
]
