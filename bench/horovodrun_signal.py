"""What horovodrun reports when it is itself sent SIGTERM (a measurement, not a test).

    python bench/horovodrun_signal.py [--jobs 40] [--exit_delay 0.3] [--np 2] [--busy 0]

Starts ``--jobs`` jobs of ``horovodrun -np N --gloo`` whose processes are this script in worker
mode: each prints a line, waits for SIGTERM, sleeps ``--exit_delay`` seconds (train.py's last step
and checkpoint) and exits 75 (train.py's code for a stop on a signal). Once every process has
printed, horovodrun gets SIGTERM, which it forwards to each process through its middleman. Prints
a table of what horovodrun did: its exit code, and whether its output named the processes' 75
(``Exit code: 75``). Every process exited 75 in every job, so any other outcome is horovodrun's.
``--busy`` more processes spin on the CPU meanwhile, to load the machine as a training job
beside it would.

Horovod 0.28.1 can report 0 here: each middleman waits for its process's shell with
``subprocess.Popen.wait`` while its signal-forwarding thread, after terminating the shell's
children, waits for the same shell with psutil; when that thread reaps the shell first,
``Popen.wait`` finds no child and returns 0. How often depends on the machine's load
(docs/DISTRIBUTED.md has the numbers measured).
"""
import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import time

MARK = "WORKER_UP"


def worker(exit_delay):
    received = []
    signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))
    print(MARK, flush=True)
    while not received:
        time.sleep(0.01)
    time.sleep(exit_delay)
    os._exit(75)


def job(horovodrun, processes, exit_delay):
    """One job, SIGTERM to horovodrun once every worker is up: (exit code, ``Exit code: 75``
    printed)."""
    command = [horovodrun, "-np", str(processes), "--gloo", sys.executable,
               os.path.abspath(__file__), "--worker", f"--exit_delay={exit_delay}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    output = ""
    while output.count(MARK + "\n") < processes:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"horovodrun ended before its workers were up:\n{output}")
        output += line
    process.send_signal(signal.SIGTERM)
    output += process.stdout.read()
    process.wait()
    return process.returncode, "Exit code: 75" in output


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--np", type=int, default=2, dest="processes")
    parser.add_argument("--exit_delay", type=float, default=0.3)
    parser.add_argument("--busy", type=int, default=0, help="processes spinning meanwhile")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.exit_delay)
    horovodrun = shutil.which("horovodrun") or os.path.join(os.path.dirname(sys.executable),
                                                            "horovodrun")
    outcomes = collections.Counter()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.busy)]
    try:
        for number in range(args.jobs):
            outcome = job(horovodrun, args.processes, args.exit_delay)
            outcomes[outcome] += 1
            print(f"job {number + 1}/{args.jobs}: horovodrun exit code {outcome[0]}, "
                  f"'Exit code: 75' {'printed' if outcome[1] else 'not printed'}, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
    print(f"\n{args.jobs} jobs of horovodrun -np {args.processes} --gloo, SIGTERM to horovodrun, "
          f"every process exiting 75 {args.exit_delay} s after it, {args.busy} busy "
          f"processes beside:\n")
    print("| horovodrun exit code | `Exit code: 75` printed | jobs |")
    print("| ---: | --- | ---: |")
    for (code, printed), count in sorted(outcomes.items()):
        print(f"| {code} | {'yes' if printed else 'no'} | {count} |")


if __name__ == "__main__":
    main()
