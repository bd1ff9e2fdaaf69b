"""Sparkplug B 3.0: the specification's protobuf schema and the classes generated from it.

sparkplug_b.proto is Eclipse Tahu's (EPL-2.0); sparkplug_b_pb2.py/.pyi are generated from it
by scripts/gen_sparkplug.py and checked against it by the test suite. Nothing here is edited
by hand but this file and the codec beside it.
"""
