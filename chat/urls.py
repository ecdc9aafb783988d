from django.urls import path

from chat import views

urlpatterns = [
    path("chat/", views.chat_page, name="chat"),
    path("chat/c/<uuid:conversation_id>/", views.chat_page, name="chat-conversation"),
    path("chat/stream", views.chat_stream, name="chat-stream"),
]
