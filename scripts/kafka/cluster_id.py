"""Print a random KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

An id that starts with '-' is drawn again, as Kafka's own Uuid.randomUuid does: the storage
tool would read it as an option ("argument --cluster-id: expected one argument"), which made
about one start in 64 fail.
"""

import base64
import os

while True:
    cluster = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not cluster.startswith("-"):
        print(cluster)
        break
