"""The person's notifications on the pages: the count in the navigation, the list (their own, in
this organization), and "mark all read"."""

from django.test import Client

from crm_automation.crm.models import Membership, Notification


def test_notifications_are_counted_listed_and_marked_read(org, other_org, owner, viewer):
    Notification.objects.create(organization=org, user=owner, title="“Kickoff” was paused: too many runs failed",
                                link="/crm/automation/runs/?status=failed")
    Notification.objects.create(organization=org, user=viewer, title="For the viewer")
    Membership.objects.create(user=owner, organization=other_org, role="viewer")
    Notification.objects.create(organization=other_org, user=owner, title="From another organization")
    client = Client()
    client.force_login(owner)
    page = client.get("/crm/automation/").content.decode()
    assert 'aria-label="1 unread">1</span>' in page
    listing = client.get("/crm/automation/notifications/").content.decode()
    assert "was paused: too many runs failed" in listing
    assert "For the viewer" not in listing and "From another organization" not in listing
    response = client.post("/crm/automation/notifications/read/", follow=True)
    assert "Marked 1 notifications read." in response.content.decode()
    assert 'unread">' not in client.get("/crm/automation/").content.decode()
    assert Notification.objects.get(title="For the viewer").read_at is None
