"""The exit codes of `capi-sync`, in one place (the README lists them; a test checks it).

Imported by the command line before Beam is (a Ctrl-C exits with one of them), so this module
imports nothing.
"""

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_AUTH = 3
EXIT_RETRIES_EXHAUSTED = 4   # the run finished, but some events await a replay of their dead letters
EXIT_NOTHING_READ = 5        # no row read (a glob matched no file, an empty query), or all skipped
EXIT_NOTHING_DELIVERED = 6   # rows were read, every one was dead-lettered: nothing was sent
EXIT_NOT_SAVED = 7           # the run finished, but its report or watermark could not be saved
EXIT_DEAD_LETTER_RATE = 8    # more dead letters than --max-dead-letter-rate allows
EXIT_SOURCE_FAILED = 9       # the source failed while being read (a dropped connection): run again
EXIT_INTERRUPTED = 130       # Ctrl-C (SIGINT): 128 + the signal's number, as shells report it
EXIT_TERMINATED = 143        # SIGTERM (a scheduler's timeout, a container stopping): 128 + 15
