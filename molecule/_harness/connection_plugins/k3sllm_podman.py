# Test harness only: the molecule scenarios' connection to their systemd containers.
"""containers.podman's podman connection with module pipelining and a filesystem mount only when needed.

The upstream plugin runs every task as five ``podman`` processes (mount, home lookup, temp folder,
module, clean-up) because it cannot pipeline: it never passes stdin to ``podman exec``. Each
``podman`` process costs a noticeable share of a CPU, and the scenarios run thousands of tasks on a
2-core machine beside the rest of the suite. Here a module goes to the container's Python on stdin
(``podman exec -i``), as it does over SSH with the ``pipelining = true`` the project's ansible.cfg
sets, so a task is one ``podman exec``; the container filesystem is mounted only for a file copy.
"""

from __future__ import annotations

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase

from ansible_collections.containers.podman.plugins.connection.podman import (
    Connection as PodmanConnection,
)

DOCUMENTATION = """
    name: k3sllm_podman
    short_description: Run tasks in a local podman container, modules pipelined on stdin
    description:
      - The molecule scenarios' connection (test harness, not part of the collection).
    options:
      remote_addr:
        description: The container's name or ID.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: User to run commands as inside the container.
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments for every podman command.
        default: ''
        vars:
          - name: ansible_podman_extra_args
      podman_executable:
        description: The podman program.
        default: podman
        vars:
          - name: ansible_podman_executable
      pipelining:
        description: Send modules on stdin instead of copying them into the container first.
        type: boolean
        default: true
        vars:
          - name: ansible_pipelining
"""


class Connection(PodmanConnection):
    transport = "k3sllm_podman"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._mount_tried = False

    def _connect(self):
        # No `podman mount` here: most tasks never copy a file.
        ConnectionBase._connect(self)
        self._connected = True
        return self

    def _mount_once(self) -> None:
        if not self._mount_tried:
            self._mount_tried = True
            PodmanConnection._connect(self)

    def exec_command(self, cmd, in_data=None, sudoable=False):
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        podman_args = ["exec"]
        if in_data is not None:
            podman_args.append("-i")  # the pipelined module arrives on stdin
        if self.user:
            podman_args += ["--user", self.user]
        return self._podman(podman_args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)

    def put_file(self, in_path, out_path):
        self._mount_once()
        super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._mount_once()
        super().fetch_file(in_path, out_path)
