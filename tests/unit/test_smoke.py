from bwsync.model import Group


def test_group_member_order_is_insertion_order() -> None:
    g = Group("r", "e", "n")
    for x in ["b", "a", "b", "c"]:
        g.add_user(x)
    assert list(g.user_member_external_ids) == ["b", "a", "c"]
