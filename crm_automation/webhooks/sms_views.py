"""What an SMS provider sends back: delivery status callbacks and inbound messages (replies,
STOP/START), at URLs made for each organization (SmsSettings.public_id), verified by the
provider's signature (crm/sms/inbound.py), bounded and rate-limited like inbound webhooks."""

from django.conf import settings
from django.http import HttpResponse
from rest_framework import status
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_automation.crm.sms import inbound
from crm_automation.webhooks.throttling import InboundWebhookThrottle

MAX_BODY = 16 * 1024


class SmsCallbackView(APIView):
    authentication_classes: list = []  # the signature authenticates; no session, so no CSRF
    permission_classes = [AllowAny]
    throttle_classes = [InboundWebhookThrottle]
    parser_classes = [FormParser]
    schema = None  # (the provider's own format, not part of our API)

    def handle(self, sms_settings, fields):  # pragma: no cover - each view says what it does
        raise NotImplementedError

    def post(self, request, public_id):
        if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY:
            return Response({"detail": "the body is too large", "code": "too_large"}, status=413)
        try:
            fields = {str(k): str(v) for k, v in request.data.items()}
        except (UnsupportedMediaType, ParseError):
            return Response({"detail": "send the provider's form fields (application/x-www-form-urlencoded)",
                             "code": "not_form"}, status=415)
        url = settings.SITE_URL + request.get_full_path()
        try:
            sms_settings = inbound.verified(public_id, url, fields, request.headers.get("X-Twilio-Signature", ""))
            self.handle(sms_settings, fields)
        except inbound.Refused as refused:
            return Response({"detail": refused.message, "code": refused.code}, status=refused.status)
        # Twilio takes an empty TwiML answer as "nothing to send back".
        return HttpResponse("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
                            content_type="text/xml", status=status.HTTP_200_OK)


class SmsStatusView(SmsCallbackView):
    def handle(self, sms_settings, fields):
        inbound.status_callback(sms_settings, fields)


class SmsInboundView(SmsCallbackView):
    def handle(self, sms_settings, fields):
        inbound.receive(sms_settings, fields)
