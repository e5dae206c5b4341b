"""`kubectl streamtrain`: operate a streamtrain release from kubectl (status, versions, serving, pause).

main.py parses the command line, commands.py does each command's work on a transport (kube.py: pods of a release
through the API server; local.py: components running as processes here), views.py turns results into tables,
JSON or YAML. Every failure is one of errors.py's, each with its exit code.
"""
