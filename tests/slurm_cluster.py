"""A one-node Slurm cluster on loopback for the tests, from Debian's slurm-wlm and munge.

No systemd here, so munged, slurmctld and slurmd are started by hand, with every file in a
temporary folder and SLURM_CONF pointing at it for the test's own commands. slurmd runs
"configless" (it fetches the config from slurmctld and caches it under /run/slurm/conf), because
the Snakemake job-step executor drops SLURM_* variables, SLURM_CONF included, before its inner srun.
Job accounting is off (no slurmdbd), so the profile queries job status with squeue; MinJobAge
keeps finished jobs visible to it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    for tool in (*DAEMONS, "sbatch", "squeue", "srun", "sinfo"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    return None


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


GPUS = 2


class Cluster:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.procs: list[subprocess.Popen] = []
        self.node = socket.gethostname().split(".")[0]
        self.env = {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")}
        self.ctld_port = None

    def write_config(self) -> None:
        ctld_port, d_port = _free_ports(2)
        self.ctld_port = ctld_port
        cpus = os.cpu_count() or 1
        mem = max(1000, int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8))
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "slurm.conf").write_text(f"""
ClusterName=cxr14test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
SlurmctldParameters=enable_configless
AuthType=auth/munge
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/slurmctld.log
SlurmdLogFile={self.root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=600
ReturnToService=2
MpiDefault=none
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} Gres=gpu:{GPUS} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        # Stand-in GPUs (no device files): enough for Slurm to schedule `--gpus=1` jobs side by side.
        (self.root / "gres.conf").write_text(
            "".join(f"NodeName={self.node} Name=gpu File={dev}\n" for dev in ("/dev/null", "/dev/zero")[:GPUS])
        )

    def start(self, timeout: float = 60) -> Cluster:
        self.write_config()
        if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            subprocess.run(["munged", "--force"], check=True, capture_output=True)
        node_env = {k: v for k, v in self.env.items() if k != "SLURM_CONF"}
        for cmd, env in (
            (["slurmctld", "-D", "-i"], self.env),
            (["slurmd", "-D", "-N", self.node, "--conf-server", f"127.0.0.1:{self.ctld_port}"], node_env),
        ):
            log = open(self.root / f"{cmd[0]}.out", "w")
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            time.sleep(1.0)
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if out.stdout.strip() in ("idle", "mixed"):
                return self
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"Slurm did not come up: {out.stdout} {out.stderr}\n" + self.logs())

    def logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in self.root.glob("*.log") if p.exists())

    def stop(self) -> None:
        subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True)
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
