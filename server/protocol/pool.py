"""Tau's private protobuf descriptor pool.

tritonclient registers the same `inference.*` names in the default pool;
keeping ours apart lets both import in one process.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
