"""Which containers nova-compute's start removes: the half-made ones of builds and
of rebuilds past nova's destroy (nova's _init_instance sets both to ERROR), never
an old container a rebuild had not reached yet; and which known instances' containers
are stale."""
import types
import unittest

from nova.compute import task_states, vm_states

from nova_lxd_py import reconcile


def _instance(vm_state, task_state=None, **kw):
    return types.SimpleNamespace(vm_state=vm_state, task_state=task_state, **kw)


class CutShortTest(unittest.TestCase):
    def test_builds(self):
        self.assertEqual("build", reconcile.cut_short(_instance(vm_states.BUILDING)))
        self.assertEqual("build", reconcile.cut_short(
            _instance(vm_states.ACTIVE, task_states.SPAWNING)))

    def test_rebuild_after_the_old_container_was_destroyed(self):
        for vm_state in (vm_states.ACTIVE, vm_states.STOPPED):
            for task in (task_states.REBUILD_BLOCK_DEVICE_MAPPING,
                         task_states.REBUILD_SPAWNING):
                self.assertEqual("rebuild", reconcile.cut_short(_instance(vm_state, task)))

    def test_rebuild_not_past_the_destroy_keeps_the_old_container(self):
        self.assertIsNone(reconcile.cut_short(
            _instance(vm_states.ACTIVE, task_states.REBUILDING)))

    def test_error_instances_are_left_as_nova_leaves_them(self):
        self.assertIsNone(reconcile.cut_short(
            _instance(vm_states.ERROR, task_states.REBUILD_SPAWNING)))
        self.assertIsNone(reconcile.cut_short(_instance(vm_states.ACTIVE)))


class StaleTest(unittest.TestCase):
    def test_deleted_or_elsewhere_without_a_move(self):
        self.assertTrue(reconcile.stale(
            _instance(vm_states.DELETED, deleted=True, host="h1", migration_context=None),
            "h1"))
        self.assertTrue(reconcile.stale(
            _instance(vm_states.ACTIVE, deleted=False, host="h2", migration_context=None),
            "h1"))

    def test_here_or_moving_stays(self):
        self.assertFalse(reconcile.stale(
            _instance(vm_states.ACTIVE, deleted=False, host="h1", migration_context=None),
            "h1"))
        self.assertFalse(reconcile.stale(
            _instance(vm_states.RESIZED, deleted=False, host="h2", migration_context=object()),
            "h1"))


class OrphanTest(unittest.TestCase):
    def test_reads_like_an_instance_for_os_vif_and_logs(self):
        orphan = reconcile.Orphan(uuid="u1", name="c1")
        self.assertEqual("[instance: u1] ", "[instance: %(uuid)s] " % orphan)
        self.assertFalse(orphan.obj_attr_is_set("project_id"))
        self.assertTrue(orphan.obj_attr_is_set("name"))


if __name__ == "__main__":
    unittest.main()
