"""The audits of a staged wheel set: GPU targets (gpu.py, reading binaries with gpucode.py
and elf.py), dynamic links (links.py) and JIT coverage (jit.py). Each ``gate`` returns its
record for the set's manifest or refuses the set in one line.

No code here on purpose: Dockerfile.clean runs ``python -m wheelforge.audit.gpu`` and
``wheelforge.audit.links`` in a runtime image with the standard library (and pyelftools)
only, so importing this package must pull in nothing else; .dockerignore lets in exactly
the modules they import.
"""
