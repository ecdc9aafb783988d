"""Real servers on 127.0.0.1, shared by the tests (tests/) and the bench (bench/): Tollgate itself
(servers.py), a stand-in upstream model (standin.py), an SMTP server (mail.py) and a TCP proxy
whose link can be cut (tcp_proxy.py)."""
