from django.urls import path

from chat import api, views

urlpatterns = [
    path("query", api.query, name="query"),
    path("v1/chat/completions", api.chat_completions, name="v1-chat-completions"),
    path("v1/models", api.models, name="v1-models"),
    path("chat/", views.chat_page, name="chat"),
    path("chat/c/<uuid:conversation_id>/", views.chat_page, name="chat-conversation"),
    path("chat/stream", views.chat_stream, name="chat-stream"),
]
