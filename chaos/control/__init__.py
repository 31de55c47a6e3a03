"""Control layer: how the controller talks to node hosts (SSH with paramiko, the Docker engine).

Both the `docker` and the `ssh` runtimes drive nodes through the same pieces: `ssh.SshSession`
(commands, upload, download), `remote.RemoteProcesses` (start/stop/kill/pause a node's process
by signals over SSH), and, for Docker, `engine.docker_client` (one clear error when the engine
does not answer).
"""
