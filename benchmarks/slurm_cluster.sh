#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian packages slurmctld, slurmd, munge), the tiny
# cohort run through it with workflow/profiles/slurm, proof that its jobs ran as SLURM jobs, and
# teardown by PID. Needs root (the daemons run as root; systemd is not needed) and the venv of the
# README plus the SLURM executor plugin:  pip install "snakemake-executor-plugin-slurm>=2.6.1,<2.7".
#
#   bash benchmarks/slurm_cluster.sh [WORKDIR]      (default: a new folder under /tmp)
#   COMPARE_WITH=path/to/local/results bash benchmarks/slurm_cluster.sh   (tables byte for byte)
#
# Exit status: that of the Snakemake run (0 = the tiny cohort completed through SLURM and every job
# it ran was a SLURM job).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/dosepaint-slurm.XXXX)}
mkdir -p "$WORK"/{etc,state,spool,log,run}
SNAKEMAKE=${SNAKEMAKE:-snakemake}
TIMEOUT_S=${TIMEOUT_S:-5400}

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  echo "installing slurmctld, slurmd, slurm-client, munge from Debian" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null
fi

HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

# --- munge: a fresh key and socket of our own, so an existing munged is not disturbed -------------
KEY="$WORK/etc/munge.key"
dd if=/dev/urandom bs=1 count=1024 of="$KEY" status=none
chmod 400 "$KEY"
SOCKET="$WORK/run/munge.socket"
munged --force --key-file="$KEY" --socket="$SOCKET" --pid-file="$WORK/run/munged.pid" \
  --log-file="$WORK/log/munged.log" --seed-file="$WORK/run/munge.seed"

# --- slurm.conf: one node, no accounting, no cgroups ---------------------------------------------
# At the default path /etc/slurm/slurm.conf (an existing one is kept aside and put back on teardown):
# the executor plugin clears SLURM_* variables, SLURM_CONF among them, inside jobs, so steps started
# within a job (srun) only find the default path, as on a real cluster.
export SLURM_CONF=/etc/slurm/slurm.conf
mkdir -p /etc/slurm
if [ -e "$SLURM_CONF" ]; then mv "$SLURM_CONF" "$WORK/etc/slurm.conf.orig"; fi
cat > "$SLURM_CONF" <<CONF
ClusterName=dosepaint
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$WORK/log/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
MinJobAge=3600
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -D -i -f "$SLURM_CONF" >"$WORK/log/slurmctld.out" 2>&1 &
CTLD=$!
slurmd -D -f "$SLURM_CONF" >"$WORK/log/slurmd.out" 2>&1 &
SLURMD=$!
teardown() {
  kill "$SLURMD" "$CTLD" 2>/dev/null || true
  cp "$SLURM_CONF" "$WORK/etc/slurm.conf"
  rm -f "$SLURM_CONF"
  if [ -e "$WORK/etc/slurm.conf.orig" ]; then mv "$WORK/etc/slurm.conf.orig" "$SLURM_CONF"; fi
  wait "$SLURMD" "$CTLD" 2>/dev/null || true
  kill "$(cat "$WORK/run/munged.pid" 2>/dev/null)" 2>/dev/null || true
  echo "cluster stopped (slurmctld $CTLD, slurmd $SLURMD, munged)" >&2
}
trap teardown EXIT

for _ in $(seq 60); do
  if sinfo -h -o "%T" 2>/dev/null | grep -q idle; then break; fi
  sleep 1
done
sinfo
echo "smoke test:" && srun -N1 -n1 hostname

# --- the tiny cohort through SLURM ---------------------------------------------------------------
cd "$ROOT"
RESULTS="$WORK/results"
start=$(date +%s)
set +e
timeout -k 60 "$TIMEOUT_S" "$SNAKEMAKE" --workflow-profile workflow/profiles/slurm --configfile config/tiny.yaml \
  --config "results=$RESULTS" --slurm-logdir "$WORK/slurm_logs" --slurm-keep-successful-logs \
  >"$WORK/log/snakemake.out" 2>&1
rc=$?
set -e
end=$(date +%s)
tail -5 "$WORK/log/snakemake.out"
# Snakemake can exit 0 with jobs left (snakemake/snakemake#823): a dry run must find nothing to do.
if [ "$rc" -eq 0 ] && ! "$SNAKEMAKE" -n --workflow-profile workflow/profiles/slurm --configfile config/tiny.yaml \
    --config "results=$RESULTS" 2>&1 | grep -q "Nothing to be done"; then
  echo "the run ended but a dry run still finds jobs to do" >&2
  rc=1
fi

# --- proof: every job Snakemake ran was a SLURM job ----------------------------------------------
# the SLURM job ids Snakemake reported, each looked up in slurmctld's job-completion log
ids=$(grep -o "submitted with SLURM jobid [0-9]*" "$WORK/log/snakemake.out" | awk '{print $NF}' || true)
submitted=$(echo "$ids" | grep -c . || true)
completed=0; other=0
for id in $ids; do
  state=$(grep -o "JobId=$id .*JobState=[A-Z_]*" "$WORK/log/jobcomp.txt" | grep -o "JobState=[A-Z_]*" | tail -1)
  if [ "$state" = "JobState=COMPLETED" ]; then completed=$((completed + 1)); else other=$((other + 1)); fi
done
finished=$(grep -c "^Finished jobid" "$WORK/log/snakemake.out" || true)
localrules=$(grep -c "^localrule " "$WORK/log/snakemake.out" || true)
echo "snakemake exit status $rc after $(( end - start )) s"
echo "Snakemake jobs finished: $finished (local aggregate rules among them: $localrules)"
echo "SLURM jobs submitted: $submitted; COMPLETED in slurmctld's job-completion log: $completed; other: $other"
echo "SLURM logs: $WORK/slurm_logs; job completion log: $WORK/log/jobcomp.txt"
# Optional: COMPARE_WITH=<results of a local run of the tiny cohort> compares every table byte for byte
if [ -n "${COMPARE_WITH:-}" ]; then
  n=0; differ=0
  while IFS= read -r f; do
    n=$((n + 1))
    if ! cmp -s "$COMPARE_WITH/$f" "$RESULTS/$f"; then differ=$((differ + 1)); echo "differs: $f"; fi
  done < <(cd "$COMPARE_WITH" && find cohort patients -name "*.tsv" -o -name "*.md" -o -name "*.tex" | sort)
  echo "tables compared with $COMPARE_WITH: $n, differing: $differ"
  [ "$differ" -eq 0 ] || rc=1
fi
exit "$rc"
